"""The crm service: leads (and, later, contacts, accounts, conversations)."""
