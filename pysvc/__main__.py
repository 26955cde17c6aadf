from pysvc.cli import main

raise SystemExit(main())
