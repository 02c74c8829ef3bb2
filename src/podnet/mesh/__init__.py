"""The service mesh's data plane: what runs beside each meshed pod (semantics/mesh.py decides
which pods are meshed and what their policies say)."""
