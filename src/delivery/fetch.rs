//! Failover and version arbitration across sources. (being written)
