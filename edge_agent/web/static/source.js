// Frame sources: the device camera or a chosen video/image file, grabbed to a canvas and encoded as JPEG.

const CAMERA_ERRORS = {
  NotAllowedError: 'Camera permission was denied. Allow the camera for this page, or open a file instead.',
  SecurityError: 'The browser blocked the camera on this page. Open a file instead.',
  NotFoundError: 'No camera was found on this device. Open a video or image file instead.',
  NotReadableError: 'The camera is in use by another application or could not be started.',
  OverconstrainedError: 'The camera cannot deliver a usable video format.',
};

/** A user-facing error message for a failed getUserMedia call. */
export function cameraErrorMessage(err) {
  return CAMERA_ERRORS[err && err.name] || `Could not start the camera: ${err && err.message ? err.message : err}`;
}

function waitFor(target, okEvent, describeError) {
  return new Promise((resolve, reject) => {
    const ok = () => { cleanup(); resolve(); };
    const bad = () => { cleanup(); reject(new Error(describeError())); };
    const cleanup = () => { target.removeEventListener(okEvent, ok); target.removeEventListener('error', bad); };
    target.addEventListener(okEvent, ok);
    target.addEventListener('error', bad);
  });
}

export class FrameSource {
  /** video and image are the page's elements that show the picture; frames are scaled to maxSide pixels. */
  constructor(video, image, { maxSide = 640, quality = 0.8 } = {}) {
    this.video = video;
    this.image = image;
    this.maxSide = maxSide;
    this.quality = quality;
    this.kind = null;          // 'camera' | 'video' | 'image'
    this.name = '';
    this.stream = null;
    this.url = null;
    this.canvas = document.createElement('canvas');
    this.stillBlob = null;     // a still image is encoded once and resent
  }

  /** Start the device camera (needs a secure context: https:// or http://localhost). */
  async openCamera() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('The camera is only available on a secure page (https:// or http://localhost). '
        + 'Open a video or image file instead.');
    }
    let stream;
    try {
      // resizeMode 'none': the camera's own picture, never cropped to fit the ideal size.
      const video = { width: { ideal: 1280 }, height: { ideal: 720 }, resizeMode: 'none' };
      stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    } catch (err) {
      throw new Error(cameraErrorMessage(err));
    }
    this.close();
    this.stream = stream;
    this.kind = 'camera';
    this.name = stream.getVideoTracks()[0]?.label || 'camera';
    this.video.srcObject = stream;
    await this.playVideo();
  }

  /** Open a chosen video or image file. */
  async openFile(file) {
    const isImage = file.type.startsWith('image/');
    if (!isImage && !file.type.startsWith('video/') && !this.video.canPlayType(file.type || 'x/none')) {
      throw new Error(`${file.name} is not a video or image file (type: ${file.type || 'unknown'}).`);
    }
    this.close();
    this.url = URL.createObjectURL(file);
    this.name = file.name;
    if (isImage) {
      this.kind = 'image';
      this.image.src = this.url;
      try {
        await this.image.decode();
      } catch {
        this.close();
        throw new Error(`The browser cannot decode the image ${file.name}.`);
      }
      this.image.hidden = false;
      return;
    }
    this.kind = 'video';
    this.video.loop = true;
    this.video.src = this.url;
    await this.playVideo();
  }

  async playVideo() {
    const video = this.video;
    video.hidden = false;
    if (video.readyState < 2) {
      await waitFor(video, 'loadeddata', () => {
        const code = video.error ? video.error.code : 0;
        return code === 4 ? `This browser cannot play ${this.name} (unsupported format or codec).`
          : `Could not load ${this.name}${video.error && video.error.message ? `: ${video.error.message}` : ''}.`;
      });
    }
    try {
      await video.play();
    } catch (err) {
      if (err.name !== 'AbortError') throw new Error(`Could not play ${this.name}: ${err.message}`);
    }
  }

  /** The element currently showing the picture, or null. */
  get element() {
    if (this.kind === 'image') return this.image;
    return this.kind ? this.video : null;
  }

  /** Natural size [w, h] of the picture, or null while it is not ready. */
  get size() {
    if (this.kind === 'image') return this.image.naturalWidth ? [this.image.naturalWidth, this.image.naturalHeight] : null;
    if (this.kind && this.video.readyState >= 2 && this.video.videoWidth) return [this.video.videoWidth, this.video.videoHeight];
    return null;
  }

  /** Encode the current picture as a JPEG Blob scaled to maxSide, or null if no picture is ready yet. */
  async grab() {
    if (this.kind === 'image' && this.stillBlob) return this.stillBlob;
    const size = this.size;
    if (!size) return null;
    const scale = Math.min(1, this.maxSide / Math.max(size[0], size[1]));
    const w = Math.max(1, Math.round(size[0] * scale));
    const h = Math.max(1, Math.round(size[1] * scale));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.canvas.getContext('2d').drawImage(this.element, 0, 0, w, h);
    const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', this.quality));
    if (!blob) throw new Error('The browser could not encode the frame as JPEG.');
    if (this.kind === 'image') this.stillBlob = blob;
    return blob;
  }

  /** Stop the camera, release the file and hide the picture. */
  close() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null;
    this.video.pause();
    this.video.removeAttribute('src');
    this.video.srcObject = null;
    this.video.hidden = true;
    this.image.removeAttribute('src');
    this.image.hidden = true;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    this.kind = null;
    this.stillBlob = null;
  }
}
