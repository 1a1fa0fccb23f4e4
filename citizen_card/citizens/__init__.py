"""The citizens registry: the identity every card and service hangs on (docs/citizens.md).

``models`` holds the ``citizen`` table, ``national_id`` the GB 11643 rules, ``reference`` the
districts and enumerations, ``schemas`` the marshmallow shapes and ``actions`` the unit-of-work
functions views call. Nothing is imported here so that importing one part stays cheap.
"""
