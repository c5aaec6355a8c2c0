"""asv benchmarks of fastmp (configuration: ``bench/asv.conf.json``)."""
