"""The crm service: leads, accounts, contacts and conversations, and the CSAT survey email."""
