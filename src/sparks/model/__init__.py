"""Model and tokenizer code shared by every stage."""
