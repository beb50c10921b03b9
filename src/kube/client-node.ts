// labvirt's one way in to @kubernetes/client-node at run time (type-only
// imports may name the package). From source this is the package itself;
// `npm run build` replaces this module's compiled form with the package
// bundled and minified (scripts/bundle-client-node.mjs): its 24.7 MB of
// generated JavaScript in about 870 files otherwise stays in every process as
// source and module records, about 35 MiB of RSS (issue #12, docs/performance.md).
export * from '@kubernetes/client-node';
