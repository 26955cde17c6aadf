"""Benchmark suite for session creation: `python -m bench` (full) or `python -m bench --quick`.

Paths measured, each by a load generator that is not the process under test:
A = pgbench calling the SQL function; B = autocannon posting to PostgREST's /rpc/create_session_record;
B_py and C = one Python client calling the same RPC (B_py) or the seed's check-then-four-inserts design
(C), to compare the two on equal terms; D = autocannon posting to the API's POST /api/intake/start.
CPU per created session is read per process from /proc. See docs/benchmarks.md.
"""
