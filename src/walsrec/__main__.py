from walsrec.cli import main

raise SystemExit(main())
