//! Logging set-up shared by both binaries: logcat on Android, stderr elsewhere.

/// Initialises the `log` facade once; `tag` is the logcat tag on Android. Off Android, rsbinder's
/// own log lines are off unless `RUST_LOG` asks for them: every failure they describe reaches the
/// user once, as this crate's one-line error.
pub fn init(tag: &'static str) {
    #[cfg(target_os = "android")]
    android_logger::init_once(
        android_logger::Config::default().with_tag(tag).with_max_level(log::LevelFilter::Info),
    );
    #[cfg(not(target_os = "android"))]
    {
        let _ = tag;
        let _ = env_logger::Builder::from_env(
            env_logger::Env::default().default_filter_or("warn,rsbinder=off"),
        )
        .format_timestamp_millis()
        .try_init();
    }
}
