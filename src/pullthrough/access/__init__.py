"""Access: client authentication, tokens, registry policy, and the secret store."""
