/// The media types of image-spec v1.1 that this module writes and reads.
public enum MediaType {
    public static let imageIndex = "application/vnd.oci.image.index.v1+json"
    public static let imageManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let imageConfig = "application/vnd.oci.image.config.v1+json"
    public static let layer = "application/vnd.oci.image.layer.v1.tar"
    public static let layerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let layerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    /// The empty descriptor's type (`{}`): the config of an artifact that needs none.
    public static let empty = "application/vnd.oci.empty.v1+json"
    /// Docker's schema 2 types, read (never written) so that layouts made from Docker images open.
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"

    public static func isManifest(_ t: String?) -> Bool { t == imageManifest || t == dockerManifest }
    public static func isIndex(_ t: String?) -> Bool { t == imageIndex || t == dockerManifestList }
}

/// Annotation keys of image-spec v1.1 used here.
public enum AnnotationKey {
    public static let refName = "org.opencontainers.image.ref.name"
    public static let created = "org.opencontainers.image.created"
    /// A layer's file name (what ORAS and other artifact tools name the file by).
    public static let title = "org.opencontainers.image.title"
}
