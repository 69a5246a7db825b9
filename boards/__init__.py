"""lutmac stage: boards."""
