//! Logging set-up shared by both binaries: logcat on Android, stderr elsewhere.

/// Initialises the `log` facade once; `tag` is the logcat tag on Android, and off Android
/// `default_filter` applies unless `RUST_LOG` says otherwise (the CLI silences rsbinder's own
/// lines, since every failure they describe reaches the user once as the CLI's one-line error;
/// the service keeps them, its log is read by people debugging it).
pub fn init(tag: &'static str, default_filter: &'static str) {
    #[cfg(target_os = "android")]
    {
        let _ = default_filter;
        android_logger::init_once(
            android_logger::Config::default().with_tag(tag).with_max_level(log::LevelFilter::Info),
        );
    }
    #[cfg(not(target_os = "android"))]
    {
        let _ = tag;
        let _ = env_logger::Builder::from_env(
            env_logger::Env::default().default_filter_or(default_filter),
        )
        .format_timestamp_millis()
        .try_init();
    }
}
