"""Declarative configuration: `pullthrough plan` / `apply -f pullthrough.yaml` over the admin API.

`document` reads the file, `state` reads the server, `plan` diffs them, `render` shows the plan
and `apply` carries it out in a safe order.
"""
