//! ControllerRevision helpers shared by the DaemonSet and StatefulSet controllers (not built yet).
