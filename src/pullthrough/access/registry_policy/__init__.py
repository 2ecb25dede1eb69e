"""The registry policy: its IAM-style document, the actions, principals and conditions a
statement names, and how a request is decided against it."""
