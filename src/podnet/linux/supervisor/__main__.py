"""python -m podnet.linux.supervisor --name NAME"""

import sys

from podnet.linux.supervisor.core import main

sys.exit(main())
