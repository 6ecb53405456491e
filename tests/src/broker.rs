//! The RabbitMQ broker the `amqp` tests use: configs for `agency` processes on it, raw
//! publishing as any client could, and questions to `rabbitmqctl`.

use std::process::Command;

use lapin::{
    options::BasicPublishOptions, types::ShortString, BasicProperties, Connection,
    ConnectionProperties,
};

/// Where the broker listens.
pub const BROKER: &str = "127.0.0.1:5672";

/// `agency.toml` for a host on `exchange`, with a console and agents `(type, id)`.
pub fn host_config(exchange: &str, console: &str, agents: &[(&str, &str)]) -> String {
    let mut text = format!(
        "transport = \"amqp\"\nconsole_id = \"{console}\"\n[transports.amqp]\nexchange = \"{exchange}\"\n"
    );
    for (kind, id) in agents {
        text += &format!("[[agents]]\ntype = \"{kind}\"\nid = \"{id}\"\n");
    }
    text
}

/// Publishes raw bodies straight to a queue through the default exchange, as any client
/// on the broker could, each with the `message_id` given beside it (if any).
pub fn publish_raw(queue: &str, bodies: &[(Vec<u8>, Option<&str>)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connection = Connection::connect(
            &format!("amqp://guest:guest@{BROKER}/%2f"),
            ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = connection.create_channel().await.unwrap();
        for (body, message_id) in bodies {
            let mut properties = BasicProperties::default().with_content_type("text/plain".into());
            if let Some(id) = message_id {
                properties = properties.with_message_id(ShortString::from(*id));
            }
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    properties,
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let _ = connection.close(200, "done".into()).await;
    });
}

/// `rabbitmqctl ARGS`' standard output; panics if it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How many messages of `queue` the broker holds ready (not yet delivered); `None` if
/// there is no such queue.
pub fn ready_in_broker(queue: &str) -> Option<u64> {
    rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
    ])
    .lines()
    .find_map(|line| {
        let (name, ready) = line.split_once('\t')?;
        (name == queue).then(|| ready.trim().parse().ok())?
    })
}

/// The broker's ids of the connections the process `pid` holds (our connections are
/// named `agency (pid N)`).
fn connection_ids_of(pid: u32) -> Vec<String> {
    let name = format!("agency (pid {pid})");
    rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ])
    .lines()
    .filter(|line| line.contains(&name))
    .filter_map(|line| line.split('\t').next().map(str::to_owned))
    .collect()
}

/// How many connections the process `pid` holds to the broker.
pub fn connections_of(pid: u32) -> usize {
    connection_ids_of(pid).len()
}

/// Closes every connection of the process `pid` from the broker's side (other tests'
/// connections are left alone).
pub fn close_connections_of(pid: u32) {
    for id in connection_ids_of(pid) {
        rabbitmqctl(&["close_connection", &id, "agency test: forced close"]);
    }
}
