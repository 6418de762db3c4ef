//! Random-walk reachability shared by `connectivity` and `trust`.
