from dmdesk.cli import main

raise SystemExit(main())
