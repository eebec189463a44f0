"""`python manage.py benchmark --data DIR [DIR ...] [--seeds 0,1,2] [--backbone NAME] [--peer] [--json FILE]`

The LFV-30 benchmark of the engine (and of anomalib's PatchCore with --peer); the logic lives in
bench.benchmark, which also runs without Django as `python -m bench`.
"""

import argparse

from django.core.management.base import BaseCommand

from bench import benchmark


class Command(BaseCommand):
    help = "Benchmark the anomaly-detection engine on data set folders with the LFV-30 protocol."

    def add_arguments(self, parser):
        benchmark.add_arguments(parser)

    def handle(self, *args, **options):
        benchmark.run(argparse.Namespace(**options), log=self.stdout.write)
