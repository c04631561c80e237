"""KFP v2 components: one thin adapter per pipeline step (artifact paths in, paths + metadata out).

Each component body imports ``vlthinker.tasks`` and calls one function; all logic lives in the
library. Components are lightweight Python components with ``install_kfp_package=False``: the image
(``components/Dockerfile.cpu`` or ``Dockerfile.gpu``) already has vlthinker and kfp installed, and
under ``kfp.local`` the current environment runs them.
Each body runs inside ``vlthinker.tasks.timing.timed``, which prints the step's own compute time
(collected per run by ``pipelines.timings``).
"""
