"""The path of a trade: proposals, the guards, the executor, the ledger and its books, reconcile, the kill switch and the automatic safety stop."""
