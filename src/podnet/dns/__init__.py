"""podnet's cluster DNS server: CoreDNS's behaviour, configured by a Corefile."""
