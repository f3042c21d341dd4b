"""What the figures say: profit and loss, status, the report and its charts, the CSV export, Box 3 tax, the candle store. Reads the book; never trades."""
