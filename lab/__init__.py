"""The hatasks lab: a 4-host HA cluster (db01 db02 lb01 lb02) in namespaces on one machine."""
