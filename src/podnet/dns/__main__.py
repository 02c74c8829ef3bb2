import sys

from podnet.dns.server import main

sys.exit(main())
