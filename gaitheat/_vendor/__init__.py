"""Third-party code copied unchanged (each folder keeps its licence), because its packaging cannot be installed here."""
