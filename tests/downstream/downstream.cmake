# filled in by the downstream-consumer work
