"""The integration test rig: real upstream registries, a token issuer, a fault-injecting proxy,
fixture images, skopeo, and the pullthrough server as a subprocess.

Each module holds one piece; `tests/conftest.py` wires them into pytest fixtures.
"""
