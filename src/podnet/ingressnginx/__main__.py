import sys

from podnet.ingressnginx.controller import main

sys.exit(main())
