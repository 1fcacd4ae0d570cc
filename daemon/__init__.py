"""The live service: feeds, brokers, slots, risk, persistence."""
