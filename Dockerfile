# skiff's container image, which `skiff kube install --image` runs in a
# cluster. `make image` builds the static binary it copies, then the
# image.
FROM scratch
COPY bin/skiff-static /skiff
ENTRYPOINT ["/skiff"]
