"""intake: customer profiles, purchases and warranty, every inbound contact, verification, classification."""
