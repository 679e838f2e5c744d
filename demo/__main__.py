import sys

from demo.walkthrough import main

sys.exit(main())
