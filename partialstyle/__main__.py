from partialstyle.cli import main

raise SystemExit(main())
