//! Attachments kept in an S3-compatible bucket (`ATTACHMENTS_URL=s3://…` and the `AWS_*`
//! variables, read by `object_store` at start): `netia serve` stores, serves and thumbnails files
//! through a fake S3 server (path-style `PUT`/`GET`/`DELETE` of objects, as MinIO answers them;
//! no real S3 is reachable here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::TestDb;
use common::api::Api;
use common::nodes::{free_port, serve_with};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

type Bucket = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Objects by "bucket/key"; every answer carries the headers S3 sends (ETag, Last-Modified).
async fn object(req: HttpRequest, body: web::Bytes, objects: web::Data<Bucket>) -> HttpResponse {
    let path = req.path().trim_start_matches('/').to_owned();
    let mut objects = objects.lock().unwrap();
    let etag = |bytes: &[u8]| format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..16]));
    match req.method().as_str() {
        "PUT" => {
            let tag = etag(&body);
            objects.insert(path, body.to_vec());
            HttpResponse::Ok().insert_header(("ETag", tag)).finish()
        }
        "GET" | "HEAD" => match objects.get(&path) {
            Some(bytes) => HttpResponse::Ok()
                .insert_header(("ETag", etag(bytes)))
                .insert_header(("Last-Modified", "Wed, 02 Dec 2026 06:00:00 GMT"))
                .insert_header(("Content-Type", "application/octet-stream"))
                .body(bytes.clone()),
            None => HttpResponse::NotFound()
                .content_type("application/xml")
                .body("<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"),
        },
        "DELETE" => {
            objects.remove(&path);
            HttpResponse::NoContent().finish()
        }
        _ => HttpResponse::MethodNotAllowed().finish(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_go_to_an_s3_compatible_bucket() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let objects: Bucket = Arc::default();
    let s3_port = free_port();
    let data = web::Data::new(objects.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(object)))
        .workers(1)
        .bind(("127.0.0.1", s3_port))
        .unwrap()
        .run();
    tokio::spawn(server);

    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let _netia = serve_with(
        &db,
        port,
        &[
            ("ATTACHMENTS_URL", "s3://netia-files/eu/uploads"),
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test-key"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ],
    )
    .await;
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let admin = api.register("s3@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;

    let image = image::RgbImage::from_pixel(700, 350, image::Rgb([20, 120, 200]));
    let mut picture = std::io::Cursor::new(Vec::new());
    image.write_to(&mut picture, image::ImageFormat::Png).unwrap();
    let picture = picture.into_inner();
    let response = api
        .http
        .post(format!(
            "{}/api/conversations/{conversation}/attachments?file_name=map.png",
            api.base
        ))
        .bearer_auth(&customer)
        .body(picture.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    let file = &body["data"]["attachments"][0];
    let url = file["url"].as_str().unwrap();
    let key = url.trim_start_matches("/api/attachments/");

    // The object is in the bucket, under the prefix, byte for byte.
    let stored = objects
        .lock()
        .unwrap()
        .get(&format!("netia-files/eu/uploads/{key}"))
        .cloned();
    assert_eq!(
        stored.as_deref(),
        Some(picture.as_slice()),
        "stored in the bucket under the prefix"
    );

    // Served back through Netia, and its thumbnail made and kept in the bucket too.
    let get = |path: String| {
        api.http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&admin.token)
            .send()
    };
    let response = get(url.to_owned()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().to_vec(), picture);
    let response = get(file["thumbnail_url"].as_str().unwrap().to_owned()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let thumbnail = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (320, 160));
    assert!(
        objects
            .lock()
            .unwrap()
            .contains_key(&format!("netia-files/eu/uploads/{key}.thumb.webp")),
        "the thumbnail is kept beside the original"
    );
    db.cleanup().await;
}
