from dynatss.cli.main import main

raise SystemExit(main())
