"""Developer tooling for a checkout: the local Kafka broker and the end-to-end demo.

Not part of the installed package (``pyproject.toml`` packages ``monitor*`` only): these
modules download Kafka with Maven, run a JVM, and read files of the checkout
(``config/demo.yaml``). Run them from the checkout root::

    python -m devtools.local_kafka fetch|run [--port N] [--data-dir D]
    python -m devtools.demo [--workdir DIR] [--events N] [--rate R]   # scripts/demo.sh

They may import ``monitor``; ``monitor`` never imports them.
"""
