"""The admin's knowledge base: a DeepLake 3.9 dataset, local or on DeepLake Cloud (hub://)."""
