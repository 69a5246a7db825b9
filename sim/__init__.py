"""lutmac stage: sim."""
