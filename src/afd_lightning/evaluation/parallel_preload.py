"""What an evaluation worker needs before its first job, imported once by the fork server that starts the workers
(:func:`afd_lightning.evaluation.parallel.worker_pool`): the advertorch shim, then the modules a job unpickles
(attacks, networks, curves). Importing this module has that one effect; nothing else imports it.
"""

from __future__ import annotations

from afd_lightning.process.compat import advertorch

advertorch()

import afd_lightning.evaluation.attacks  # noqa: E402, F401
import afd_lightning.evaluation.sweep  # noqa: E402, F401
import afd_lightning.nets  # noqa: E402, F401
