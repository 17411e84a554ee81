import sys

from sessiond.cli.main import main

sys.exit(main())
