"""Parameter blobs (model.kmlb): a new version's forest and decision parameters for an
updatable library, checked and activated on the device without reflashing code
(docs/blob_format.md)."""
