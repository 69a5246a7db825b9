"""lutmac stage: hw."""
