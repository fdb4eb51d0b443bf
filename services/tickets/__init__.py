"""The tickets service: support tickets linked to crm contacts and conversations."""
