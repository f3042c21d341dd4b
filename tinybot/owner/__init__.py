"""What reaches the owner: alerts (apprise), the daily digest, Telegram."""
