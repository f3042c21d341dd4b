"""Running it safely: the doctor's checks and restoring a backup."""
