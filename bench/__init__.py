"""Benchmark suite for session creation: `python -m bench` (full) or `python -m bench --quick`.

Paths measured: A = the SQL function over a psycopg pool, B = the product path (AsyncSessionFactory
→ PostgREST → RPC), C = the original client-side design (check + four inserts over PostgREST),
D = the whole API (`POST /api/intake/start`). See docs/benchmarks.md.
"""
