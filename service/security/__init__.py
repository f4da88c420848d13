"""Security: API keys and scopes, artifact format sniffing and pickle pre-scanning."""
