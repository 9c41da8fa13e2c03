from partialstyle.commands.cli import main

raise SystemExit(main())
