"""lutmac stage: export."""
