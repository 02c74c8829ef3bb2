"""python -m podnet.linux.supervisor --name NAME"""

import sys

from podnet.linux.supervisor.loop import main

sys.exit(main())
